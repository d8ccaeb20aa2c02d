"""Compiled kernels. Private: stateless functions over caller-supplied buffers."""
