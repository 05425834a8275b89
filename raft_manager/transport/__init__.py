"""Moving core messages between nodes: the wire codec (codec.py); transports come with the node."""
