"""SQLite project store of svd-workbench. Never imports TensorFlow."""
