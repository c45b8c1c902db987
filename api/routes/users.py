"""Users: for now who you are (`GET /users/me`); admin user management comes with identity."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser
from api.errors import problem_responses
from api.routes import API_PREFIX
from schemas.api.users import UserOut

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])


@router.get("/me", summary="The authenticated user", response_model=UserOut, responses=problem_responses(401))
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
