"""Reading request bodies under limits: bounded bodies and multipart forms, uploads, prediction inputs."""
