"""python -m runtime.isa > tables.md: docs/isa.md's encoding tables."""
from runtime.isa.spec import field_table_markdown

print(field_table_markdown(), end="")
