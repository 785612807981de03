"""HTTP server: accepts bundles, queues jobs on disk, streams progress, serves frames."""
