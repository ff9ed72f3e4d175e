"""The metadata port: the real service's request rules, routing, rendering, endpoints and fixed answers."""
