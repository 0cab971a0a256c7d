"""One pytest run with devloop: the run controller and the `eventually` helper."""
