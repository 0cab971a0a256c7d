"""The devloop configuration: its model, the file search, and the import of `skaffold.yaml`."""
