//! The `keyward` binary: its commands, their `--json` output, and the server seeing what they create.
