"""The hub's directory: users and their roles, agents with skills and languages, queues
and the dialled numbers that lead to them. Durable, in SQL; read at start-up and on change."""
