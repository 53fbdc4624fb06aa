"""The host site's pages: login and logout (Django's), the home page, the chat's token URL, the notify form's view."""

from django.contrib.auth import views as auth_views
from django.urls import path

from chatsite import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("chat-token/", views.chat_token, name="chat_token"),
    path("notify/", views.notify_room, name="notify_room"),
]
