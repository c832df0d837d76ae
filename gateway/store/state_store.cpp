#include "gateway/store/state_store.h"

namespace ccm::gateway {

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
  for (ProposalStatus s : {ProposalStatus::kOpen, ProposalStatus::kApproved,
                           ProposalStatus::kCarriedOut, ProposalStatus::kDropped}) {
    if (ToCode(s) == code) return s;
  }
  return std::nullopt;
}

std::optional<PullState> PullStateFromCode(std::string_view code) noexcept {
  for (PullState s : {PullState::kRunning, PullState::kComplete, PullState::kIncomplete,
                      PullState::kFailed, PullState::kNotOffered}) {
    if (ToCode(s) == code) return s;
  }
  return std::nullopt;
}

}  // namespace ccm::gateway
