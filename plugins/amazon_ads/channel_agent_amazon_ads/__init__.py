"""Amazon Ads channel for Channel Health Agent."""
