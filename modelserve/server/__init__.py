"""Server: sockets, transports, status codes. The core never knows which transport a request used."""
