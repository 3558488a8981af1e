"""svd-workbench: spatial SVD compression for Keras 3 convolutional networks.

Importing this package stays cheap: TensorFlow loads only when an engine module
(`workbench.engine`, `workbench.compress`) is imported or `workbench.export`
runs an export, so the terminal app can import `workbench.costs` and
`workbench.selection` freely.
"""

__version__ = "0.1.0"
