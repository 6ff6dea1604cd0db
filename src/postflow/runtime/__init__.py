"""The durable runtime's shells: the due sweep, the dispatcher, the daemon."""
