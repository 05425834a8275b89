"""Moving core messages between nodes: the interface and shared pieces (base.py), the wire codec
(codec.py), framed connections (framed.py), TCP (tcp.py), Redis streams (redis_streams.py), and the
client protocol spoken on each node's client address (client_protocol.py)."""
