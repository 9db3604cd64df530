/* The audit trail's filters (issue 14). An invalid filter is answered 400 with a table that says
 * which filter to correct; htmx swaps no 4xx answer by default, which left the previous rows and
 * their export links on screen as if the new filter had applied. The trail's 400s are swapped. */
document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.xhr.status === 400 && event.detail.target.id === "audit-table") {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
