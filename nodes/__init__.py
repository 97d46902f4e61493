"""AvatarGraph's built-in nodes. The engine discovers every module below this package."""
