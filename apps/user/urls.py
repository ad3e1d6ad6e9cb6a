from starlette.routing import Route

from apps.user import views

routes = [
    Route("/register", views.register, methods=["POST"]),
    Route("/login", views.login, methods=["POST"]),
    Route("/refresh-token", views.refresh_token, methods=["POST"]),
    Route("/logout", views.logout, methods=["POST"]),
    Route("/verify", views.verify, methods=["GET"]),
    Route("/me", views.me, methods=["GET", "PATCH", "DELETE"]),
    Route("/me/password", views.change_password, methods=["POST"]),
]
