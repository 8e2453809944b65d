"""The security and reliability suite (issue 8): docs/security.md maps each promise to its test."""
