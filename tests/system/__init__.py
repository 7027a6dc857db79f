"""System tests of the vitalflow services and deploy/: real processes against the real Kafka."""
