"""The user app of the UtilMeta peer (utilmeta_app.py): its tutorial's models, session and API."""
