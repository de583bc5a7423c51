"""Op definitions: rnn."""
