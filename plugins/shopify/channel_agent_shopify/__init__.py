"""Shopify channel for Channel Health Agent."""
