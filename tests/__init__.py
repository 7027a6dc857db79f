"""vitalflow's Python test suites: `system/` runs the services and deploy/, `support/` is what they and
clients/tests share."""
