"""The metadata endpoints, one module each (instance, versions, loadbalancer, scheduledevents, identity,
attested), behind the shape in ``base`` that the service dispatches to."""
