from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from access import apis as access_apis
from access import views_content
from accounts import views as account_views
from accounts.forms import LoginForm
from catalog import views as catalog_views
from common.apis import HealthApi

api_v1: list[URLPattern | URLResolver] = [
    path("health", HealthApi.as_view(), name="health"),
    path("", include("access.urls")),  # first: the metered access call is the busiest address
    path("", include("accounts.urls")),
    path("", include("catalog.urls")),
    path("", include("royalties.urls")),
    path("", include("studio.urls")),
    path("", include("datasets.urls")),
]

urlpatterns = [
    path("", account_views.home, name="home"),
    path("admin/login/", account_views.login_throttled(admin.site.login)),
    path("admin/", admin.site.urls),
    path("dashboard/", include("dashboard.urls")),
    path("", include("dashboard.urls_public")),  # a page per release and per public work, no login
    path("accounts/signup/", account_views.signup, name="signup"),
    path("accounts/signup/done/", account_views.signup_done, name="signup-done"),
    path("accounts/verify/send/", account_views.verify_email_resend, name="verify-email-send"),
    path("accounts/verify/<uidb64>/<token>/", account_views.verify_email, name="verify-email"),
    path(
        "accounts/reset/<uidb64>/<token>/",
        account_views.VerifyingPasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/login/",
        account_views.login_throttled(LoginView.as_view(authentication_form=LoginForm)),
        name="login",
    ),
    path("accounts/two-factor/", account_views.two_factor, name="two-factor"),
    path("accounts/reauthenticate/", account_views.reauthenticate, name="reauthenticate"),
    path("accounts/security-log/", account_views.security_log, name="security-log-page"),
    path(
        "accounts/password_change/",
        account_views.NotifyingPasswordChangeView.as_view(),
        name="password_change",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: the security policy allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("robots.txt", catalog_views.robots_txt, name="robots-txt"),
    path("licenses.xml", catalog_views.licenses_xml, name="licenses-xml"),
    path(".well-known/jwks.json", access_apis.jwks, name="jwks"),
    path(".well-known/tdmrep.json", catalog_views.tdmrep_json, name="tdmrep"),
    # One content URL per work and per file: the original to the entitled, 402 to everyone else.
    path("works/<int:work_id>/content", views_content.content_view, name="work-content"),
    path(
        "works/<int:work_id>/assets/<int:asset_id>/content", views_content.content_view, name="asset-content"
    ),
    path("works/<int:work_id>/preview", views_content.preview_view, name="work-preview"),
    path(
        "works/<int:work_id>/assets/<int:asset_id>/preview", views_content.preview_view, name="asset-preview"
    ),
    # The RSL licence server (Open License Protocol).
    path("rsl/token", views_content.rsl_token, name="rsl-token"),
    path("rsl/introspect", views_content.rsl_introspect, name="rsl-introspect"),
    path("rsl/keys", views_content.rsl_keys, name="rsl-keys"),
]

# Under /api/, unknown addresses and crashes answer problem+json like every other API error.
handler404 = "common.errors.page_not_found"
handler500 = "common.errors.server_error"
# Uploaded files are never served from MEDIA_URL, not even in DEBUG: originals go only through the
# content URLs above, which check entitlement.
