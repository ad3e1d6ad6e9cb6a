"""UtilMeta's "User Login & RESTful API" tutorial, the parts the benchmark uses: a database-backed
session (cookie `sessionid`), `auth.User` over it, login and the current user (GET /api/user)."""

from datetime import datetime

import utype
from utilmeta.core import api, auth, orm, request
from utilmeta.core.auth.session.db import DBSession, DBSessionSchema
from utilmeta.utils import exceptions

from .models import Session, User

USER_ID = "_user_id"


class SessionSchema(DBSessionSchema):
    def get_session_data(self):
        data = super().get_session_data()
        data.update(user_id=self.get(USER_ID))
        return data


session_config = DBSession(
    session_model=Session,
    engine=SessionSchema,
    cookie=DBSession.Cookie(name="sessionid", age=7 * 24 * 3600, http_only=True),
)

user_config = auth.User(
    user_model=User,
    authentication=session_config,
    key=USER_ID,
    login_fields=User.username,
    password_field=User.password,
)


class LoginSchema(utype.Schema):
    username: str
    password: str


class UserSchema(orm.Schema[User]):
    id: int
    username: str
    signup_time: datetime


@session_config.plugin
class UserAPI(api.API):
    @api.post
    def login(self, data: LoginSchema = request.Body) -> UserSchema:
        user = user_config.login(request=self.request, ident=data.username, password=data.password)
        if not user:
            raise exceptions.PermissionDenied("Username or password wrong")
        return UserSchema.init(user)

    def get(self, user: User = user_config) -> UserSchema:
        return UserSchema.init(user)
