"""What a VM is: the catalogue of fields, profiles, defaults, identities, fleets, faults and events. Pure data."""
