"""What an artifact's output depends on and how it is produced: fingerprints, rendering, images."""
