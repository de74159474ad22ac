"""The check loop: scheduling, HTTP to the channels, retries, rate limits, sharding."""
