#include "gateway/store/state_store.h"

namespace ccm::gateway {
namespace {

// The value of `E` whose code is `code`, among `all`.
template <class E, std::size_t N>
std::optional<E> FromCode(const E (&all)[N], std::string_view code) noexcept {
  for (E e : all) {
    if (ToCode(e) == code) return e;
  }
  return std::nullopt;
}

}  // namespace

std::string AccessInstant(fhir::TimePoint t) {
  // FormatUtc drops a zero fraction and writes microseconds otherwise: pad or cut to milliseconds.
  std::string text = fhir::FormatUtc(std::chrono::floor<std::chrono::milliseconds>(t));
  text.pop_back();  // 'Z'
  if (text.size() == 19) text += ".000";
  text.resize(23);
  return text + 'Z';
}

std::string_view ToCode(PullState s) noexcept {
  switch (s) {
    case PullState::kRunning:
      return "running";
    case PullState::kComplete:
      return "complete";
    case PullState::kIncomplete:
      return "incomplete";
    case PullState::kFailed:
      return "failed";
    case PullState::kNotOffered:
      return "not-offered";
  }
  return "";
}

std::string_view ToCode(ProposalStatus s) noexcept {
  switch (s) {
    case ProposalStatus::kOpen:
      return "open";
    case ProposalStatus::kApproved:
      return "approved";
    case ProposalStatus::kCarriedOut:
      return "carried-out";
    case ProposalStatus::kDropped:
      return "dropped";
  }
  return "";
}

std::optional<ProposalStatus> ProposalStatusFromCode(std::string_view code) noexcept {
  constexpr ProposalStatus kAll[] = {ProposalStatus::kOpen, ProposalStatus::kApproved,
                                     ProposalStatus::kCarriedOut, ProposalStatus::kDropped};
  return FromCode(kAll, code);
}

std::optional<PullState> PullStateFromCode(std::string_view code) noexcept {
  constexpr PullState kAll[] = {PullState::kRunning, PullState::kComplete, PullState::kIncomplete,
                                PullState::kFailed, PullState::kNotOffered};
  return FromCode(kAll, code);
}

std::string_view ToCode(LedgerKind k) noexcept {
  switch (k) {
    case LedgerKind::kCharge:
      return "charge";
    case LedgerKind::kAdjustment:
      return "adjustment";
    case LedgerKind::kVoid:
      return "void";
  }
  return "";
}

std::optional<LedgerKind> LedgerKindFromCode(std::string_view code) noexcept {
  constexpr LedgerKind kAll[] = {LedgerKind::kCharge, LedgerKind::kAdjustment, LedgerKind::kVoid};
  return FromCode(kAll, code);
}

std::string_view ToCode(LedgerStatus s) noexcept {
  switch (s) {
    case LedgerStatus::kPending:
      return "pending";
    case LedgerStatus::kSubmitted:
      return "submitted";
    case LedgerStatus::kAcknowledged:
      return "acknowledged";
    case LedgerStatus::kSuperseded:
      return "superseded";
  }
  return "";
}

std::optional<LedgerStatus> LedgerStatusFromCode(std::string_view code) noexcept {
  constexpr LedgerStatus kAll[] = {LedgerStatus::kPending, LedgerStatus::kSubmitted,
                                   LedgerStatus::kAcknowledged, LedgerStatus::kSuperseded};
  return FromCode(kAll, code);
}

std::string_view ToCode(DeliveryStatus s) noexcept {
  switch (s) {
    case DeliveryStatus::kPrepared:
      return "prepared";
    case DeliveryStatus::kDone:
      return "done";
    case DeliveryStatus::kFailed:
      return "failed";
  }
  return "";
}

std::optional<DeliveryStatus> DeliveryStatusFromCode(std::string_view code) noexcept {
  constexpr DeliveryStatus kAll[] = {DeliveryStatus::kPrepared, DeliveryStatus::kDone,
                                     DeliveryStatus::kFailed};
  return FromCode(kAll, code);
}

std::string_view ToCode(RunKind k) noexcept {
  switch (k) {
    case RunKind::kSync:
      return "sync";
    case RunKind::kBill:
      return "bill";
    case RunKind::kBillDryRun:
      return "bill-dry-run";
  }
  return "";
}

std::optional<RunKind> RunKindFromCode(std::string_view code) noexcept {
  constexpr RunKind kAll[] = {RunKind::kSync, RunKind::kBill, RunKind::kBillDryRun};
  return FromCode(kAll, code);
}

std::string_view ToCode(RunStatus s) noexcept {
  switch (s) {
    case RunStatus::kRunning:
      return "running";
    case RunStatus::kOk:
      return "ok";
    case RunStatus::kFailed:
      return "failed";
    case RunStatus::kStopped:
      return "stopped";
  }
  return "";
}

std::optional<RunStatus> RunStatusFromCode(std::string_view code) noexcept {
  constexpr RunStatus kAll[] = {RunStatus::kRunning, RunStatus::kOk, RunStatus::kFailed,
                                RunStatus::kStopped};
  return FromCode(kAll, code);
}

}  // namespace ccm::gateway
