"""Image work shared by every backend and the server: decode, matte, composite, encode."""
