"""Kubernetes semantics with no I/O, shared by the plugin and the embedded server.

Label and field selectors (one grammar), JSON/merge/strategic-merge patches and the
field schemas they need, server-side apply and field-path diffs (`changed_paths`), and
the table of built-in resource types. Nothing here imports the rest of the project.
"""
