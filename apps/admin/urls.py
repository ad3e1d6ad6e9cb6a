from starlette.routing import Route

from apps.admin import views

routes = [
    Route("/users", views.user_list, methods=["GET"]),
    Route("/users/{user_id:int}", views.user_detail, methods=["GET"]),
    Route("/users/{user_id:int}", views.user_update, methods=["PATCH"]),
    Route("/users/{user_id:int}", views.user_delete, methods=["DELETE"]),
    Route("/users/{user_id:int}/sessions", views.user_sessions, methods=["GET"]),
    Route("/users/{user_id:int}/sessions", views.user_sessions_end, methods=["DELETE"]),
    Route("/users/{user_id:int}/mfa", views.user_mfa_reset, methods=["DELETE"]),
    Route("/events", views.event_log, methods=["GET"]),
]
