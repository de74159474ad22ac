"""Login with Amazon, shared by the Amazon channels (Amazon Ads, Selling Partner API).

A library, not a plugin: it registers no channel. ``classify`` says what an LwA answer means,
``grants`` builds and reads the token requests, ``session`` keeps access tokens and rotated
refresh tokens between checks, ``settings`` holds the settings every LwA channel shares.
"""
