"""Node tests Tessera is known to fail, with the reason, one module per op
family. They run as strict xfails: a test that starts passing must be removed."""
from tests.conformance.known_failures import (
    control,
    elementwise,
    functions,
    gather,
    nn,
    norm,
    pool,
    quant,
    reduce,
    resize,
    rnn,
    shape,
)

KNOWN_FAILURES: dict[str, str] = {}
for _family in (control, elementwise, functions, gather, nn, norm, pool, quant, reduce, resize, rnn, shape):
    KNOWN_FAILURES.update(_family.KNOWN_FAILURES)
