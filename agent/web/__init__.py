"""The HTTP side: server, web config file, who may call what, listener, OAuth callback."""
