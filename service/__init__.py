"""The HTTP side: commands that append to a user's stream (`POST`, `PATCH`, `DELETE`), the
user's history and past states read from it, and `GET /users/<username>` from PostgreSQL."""
