"""Looks and references: what each grey box is (a look on an object or collection, its
reference images, the character bank that carries it between shots), as the .blend saves
it and as a shot sends it. Below the operators and the session; above the wire."""
