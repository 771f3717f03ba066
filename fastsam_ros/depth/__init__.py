"""3D from a registered depth image: locating selected objects, pairing depth by stamp."""
