"""The network: a dilated ResNet backbone, the shared head around a context module."""
