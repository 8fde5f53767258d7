"""Protocols: sans-I/O codecs between bytes and :mod:`modelserve.types`. No sockets here."""
