"""The HTTP side: `POST /users` appends `user-created`; `GET /users/<username>` reads PostgreSQL."""
