"""HTTP handlers of the proxy, one module per group of endpoints; `olol.proxy.app` mounts them."""
