"""Real parts the tests run against: registries, a fault-injecting proxy."""
