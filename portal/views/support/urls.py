"""/support/ URLs (included from portal.urls)."""

from django.urls import path

from portal.views.support import actions, pages

app_name = "support"

urlpatterns = [
    path("", pages.index, name="index"),
    path("search/", pages.search, name="search"),
    path("payments/<uuid:public_id>/", pages.payment_detail, name="payment"),
    path("payments/<uuid:public_id>/query/", actions.payment_query, name="payment-query"),
    path("payments/<uuid:public_id>/resend/", actions.payment_resend, name="payment-resend"),
    path("payments/<uuid:public_id>/notes/", actions.payment_note, name="payment-note"),
    path("payments/<uuid:public_id>/refunds/", actions.refund_request, name="refund-request"),
    path("refunds/<int:request_id>/decide/", actions.refund_decide, name="refund-decide"),
    path("attempts/<int:attempt_id>/reviewed/", actions.attempt_reviewed, name="attempt-reviewed"),
    path("disputes/<uuid:public_id>/", pages.dispute_detail, name="dispute"),
    path("disputes/<uuid:public_id>/reply/", actions.dispute_reply_post, name="dispute-reply"),
    path("disputes/<uuid:public_id>/assign/", actions.dispute_assign_post, name="dispute-assign"),
    path(
        "disputes/<uuid:public_id>/resolve/", actions.dispute_resolve_post, name="dispute-resolve"
    ),
    path(
        "disputes/<uuid:public_id>/screenshot/",
        pages.dispute_screenshot,
        name="dispute-screenshot",
    ),
]
