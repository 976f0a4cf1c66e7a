"""Notifications to the care team: events derived from what the feeds stored, and who is told.

Its own app (label "notifications"): events written in the ingestion
transaction (events.py), fanned out to the organisations that may be told
(dispatch.py), shown in the in-app list (inbox.py, views.py) and sent to
partner systems' FHIR Subscriptions (subscriptions.py, delivery.py, fhir.py).
"""
