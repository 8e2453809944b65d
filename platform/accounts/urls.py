from django.urls import path

from accounts import apis

urlpatterns = [
    path("me", apis.MeApi.as_view(), name="me"),
    path("api-keys", apis.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("api-keys/<int:key_id>/revoke", apis.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("api-keys/<int:key_id>/rotate", apis.ApiKeyRotateApi.as_view(), name="api-key-rotate"),
    path("reauthenticate", apis.ReauthenticateApi.as_view(), name="reauthenticate-api"),
    path("security-log", apis.SecurityLogListApi.as_view(), name="security-log"),
    path("payout-profile", apis.PayoutProfileApi.as_view(), name="payout-profile"),
    path("payout-profile/wallet-challenge", apis.WalletChallengeCreateApi.as_view(), name="wallet-challenge"),
    path("payout-profile/wallet", apis.WalletLinkApi.as_view(), name="wallet-link"),
]
