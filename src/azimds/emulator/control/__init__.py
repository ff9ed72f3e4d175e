"""The control plane: steer the emulated world over HTTP (routes, bodies, OpenAPI, metrics)."""
