"""Broker lifecycle: the embedded Kafka (Tansu) and RabbitMQ by URL."""
