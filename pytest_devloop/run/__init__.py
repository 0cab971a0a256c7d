"""One pytest run with devloop: the run controller, the recorded read API behind the
`cluster` and `rendered` fixtures, and the `eventually` helper."""
