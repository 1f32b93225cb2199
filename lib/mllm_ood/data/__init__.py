"""The offline embedded data world and the paper profile's hub dataset specs."""
