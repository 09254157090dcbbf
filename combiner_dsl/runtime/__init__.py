"""Code shared by the compiler and the modules it generates (inlined into them; imports only torch)."""
